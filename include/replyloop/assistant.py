"""The registered model: an MLflow pyfunc that holds only a LoRA adapter and names its base by hash.

`models:/replyloop-assistant@champion` loads through `mlflow.pyfunc.load_model`; `predict` takes a list of
customer messages (or conversations as lists of {"role", "text"}) and returns the agent replies.
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

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        """Customer messages in, agent replies out (one each)."""
        return self.generator.reply(list(model_input))
