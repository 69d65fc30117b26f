# gunicorn settings for {{name}} {{version}} (written by slipway build)
import os

# The node gives each version its own port ($PORT) beside the running one; {{port}} when
# run by hand.
bind = "127.0.0.1:" + os.environ.get("PORT", "{{port}}")
workers = {{workers}}
chdir = "/opt/app/src"
accesslog = "/var/log/python-web/access.log"
errorlog = "/var/log/python-web/error.log"
raw_env = ["APP_VERSION={{version}}"]
