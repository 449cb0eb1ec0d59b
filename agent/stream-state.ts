/** The push stream's last handled event id, per worker (daemon.ts keeps it, enroll resets it). */
export const STREAM_FILE = "stream.json";
