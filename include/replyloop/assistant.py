"""The registered model: an MLflow pyfunc that holds only a LoRA adapter and names its base by hash.

`models:/replyloop-assistant@champion` loads through `mlflow.pyfunc.load_model`; `predict` takes a list of
conversations, each one customer message (a str) or a list of turns {"role": "customer"|"agent", "text"},
(or a DataFrame with a `messages` column of those) and returns one agent reply each.
"""

from __future__ import annotations

import mlflow.pyfunc

from replyloop.settings import get_settings


class ReplyAssistant(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from peft import PeftModel

        from replyloop.modeling import ReplyGenerator, base_model_by_hash, load_base

        cfg = context.model_config
        settings = get_settings()
        base = base_model_by_hash(settings, cfg["base_model_sha"])
        model, tok = load_base(base)
        model = PeftModel.from_pretrained(model, context.artifacts["adapter"]).merge_and_unload()
        self.generator = ReplyGenerator(model, tok, system_prompt=cfg["system_prompt"],
                                        max_new_tokens=int(cfg.get("max_new_tokens", settings.max_new_tokens)))

    def predict(self, context, model_input, params=None) -> list[str]:
        """Conversations in, agent replies out (one each)."""
        return self.generator.reply(conversations_of(model_input))


def conversations_of(model_input) -> list:
    """The conversations of a predict input: a list, a str, a {"messages": ...} dict or a DataFrame."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        column = "messages" if "messages" in model_input.columns else model_input.columns[0]
        return [m if isinstance(m, str) else list(m) for m in model_input[column]]
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, dict):
        return [model_input["messages"]]
    return list(model_input)
