"""Real servers the tests start themselves: a throwaway PostgreSQL, HAProxy in front of instances."""
