"""DVC stages: one module per stage, each a pure `run(...)` core plus a `main()` that does I/O."""
