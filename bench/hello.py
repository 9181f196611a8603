"""The bare Flask app `make bench-http` measures next to the exchange, under the same gunicorn settings."""
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, World!"
