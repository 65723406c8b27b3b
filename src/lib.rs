//! minitls
