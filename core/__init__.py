"""The foundation every role shares: configuration, the bus, metrics, tracing, logs, fault
injection, task stopping and tenants. It imports only ``schemas`` (import contracts)."""
