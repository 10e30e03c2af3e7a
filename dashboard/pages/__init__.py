"""The dashboard's pages, one router per page family."""
