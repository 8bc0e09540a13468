/** Largest routing message keyhop accepts on any transport (Ockam's MAX_MESSAGE_SIZE). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Longest tracing-context string accepted (and ignored) in a frame. */
export const MAX_TRACING_CHARS = 4096;
