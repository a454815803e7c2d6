"""The engine: interprets a case's steps against a session (lower tester + upper tester) and records what
happened; many cases in flight on one event loop. It knows nothing of pytest and decides no verdict."""
