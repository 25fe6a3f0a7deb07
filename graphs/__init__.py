"""The LangGraph state machines: the repair loop, search, repository issues."""
