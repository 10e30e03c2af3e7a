VERSION = "0.1.0"
SDK_HEADER = f"inngest_like-py:v{VERSION}"
