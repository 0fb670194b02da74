//! Synchronous failures: replies refused during the SMTP dialogue, qualified
//! and applied exactly like a bounce recipient.
