"""/metrics in Prometheus text format."""


def test_metrics_from_loopback(client, demo):
    body = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    assert "# TYPE bsm_users gauge" in body
    assert 'bsm_users{role="customer"} 2' in body
    assert 'bsm_customer_liabilities{bucket="available",currency="BRL"} 15000.00' in body


def test_metrics_refused_from_elsewhere_without_token(app, client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    app.config["METRICS_TOKEN"] = "s3cret"
    ok = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
