//! Decoding ring-buffer records into events (filled in with the kernel side).
