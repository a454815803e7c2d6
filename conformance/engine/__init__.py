"""The engine: interprets a case's steps against a session (lower tester + upper tester) and
produces a trace and a verdict. It knows nothing of pytest."""
