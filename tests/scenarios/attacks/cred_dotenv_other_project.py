# expect: credential_read
# action: alert
# about: looks for tokens in another project's .env
import os

path = os.path.join(os.environ["PROJECTS"], "other-repo", ".env")
try:
    with open(path) as f:
        f.read()
except OSError:
    pass
