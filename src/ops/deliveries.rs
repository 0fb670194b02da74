//! Registering what was sent (the API's `POST /v1/deliveries`, the CLI's CSV import).
