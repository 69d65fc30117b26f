# gunicorn settings for {{name}} {{version}} (written by slipway build)
bind = "127.0.0.1:{{port}}"
workers = {{workers}}
chdir = "/opt/app/src"
pidfile = "/run/python-web/gunicorn.pid"
accesslog = "/var/log/python-web/access.log"
errorlog = "/var/log/python-web/error.log"
raw_env = ["APP_VERSION={{version}}"]
