"""The alert notifier of replyloop: one Airflow connection decides where alerts go.

Connection `replyloop_alerts` (setting REPLYLOOP_MONITOR_NOTIFY_CONN_ID):
  - type `smtp`: an e-mail through the SMTP provider's SmtpNotifier (extra `to`, default the login);
  - type `http`/`https`: a JSON POST {"text": ..., "dag_id", "run_id"} to host[:port]/schema path
    (Slack/Teams-style incoming webhook; `password` is sent as a bearer token when set).
No connection defined: the alert goes to the task log only.
"""

from __future__ import annotations

import json
import logging
import urllib.request

from airflow.sdk import BaseNotifier, Connection

log = logging.getLogger(__name__)


class AlertNotifier(BaseNotifier):
    template_fields = ("message",)

    def __init__(self, message: str, conn_id: str | None = None):
        super().__init__()
        self.conn_id = conn_id
        self.message = message

    def notify(self, context) -> None:
        if self.conn_id is None:
            from replyloop.settings import get_settings

            self.conn_id = get_settings().monitor_notify_conn_id
        try:
            conn = Connection.get(self.conn_id)
        except Exception:
            log.warning("no connection %r: alert only logged: %s", self.conn_id, self.message)
            return
        if conn.conn_type == "smtp":
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            to = (conn.extra_dejson or {}).get("to") or conn.login
            SmtpNotifier(to=to, smtp_conn_id=self.conn_id, subject="replyloop: retraining requested",
                         html_content=f"<p>{self.message}</p>").notify(context)
            return
        url = conn.host if "://" in (conn.host or "") else f"{conn.conn_type}://{conn.host}"
        if conn.port:
            url += f":{conn.port}"
        url += "/" + (conn.schema or "").lstrip("/")
        body = json.dumps({"text": self.message, "dag_id": context["dag"].dag_id,
                           "run_id": context["run_id"]}).encode()
        headers = {"content-type": "application/json"}
        if conn.password:
            headers["authorization"] = f"Bearer {conn.password}"
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30) as r:
            log.info("alert sent (%s)", r.status)
