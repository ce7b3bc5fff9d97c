//! Test certificate authority and server certificates (filled in next).
