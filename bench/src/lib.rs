//! Shared helpers of pcad's benchmark programs (each program is a binary in `src/bin/`).
