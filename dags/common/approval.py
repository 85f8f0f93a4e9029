"""The approval step of evaluate_and_promote: the standard provider's ApprovalOperator, keeping its answer.

On "Reject" (a person's, or the default applied at the timeout) the ApprovalOperator skips its downstream
task by raising, so its return value never reaches XCom and the answer would be lost to the task that
records it on the model version. This subclass pushes the answer (XCom key `answer`) first, whatever it is.
"""

from __future__ import annotations

from airflow.providers.standard.operators.hitl import ApprovalOperator

ANSWER_KEY = "answer"


class RecordedApprovalOperator(ApprovalOperator):
    def execute_complete(self, context, event):
        if "error" not in event:
            at = event.get("responded_at")
            context["ti"].xcom_push(key=ANSWER_KEY, value={
                "chosen_options": event.get("chosen_options"), "params_input": event.get("params_input") or {},
                "responded_by_user": event.get("responded_by_user"),
                "responded_at": at.isoformat() if hasattr(at, "isoformat") else at})
        return super().execute_complete(context, event)
