"""Checks a `hint export --peft` folder with Hugging Face's own code: loads `base/` with
transformers, applies `adapter/` with PEFT's `PeftModel.from_pretrained`, and compares
the logits for the check input with those HINT wrote (`check.safetensors`).

    python crates/hint-model/scripts/peft_check.py EXPORT_DIR [tolerance]   # torch, transformers, peft

Prints the largest difference; exits 1 when it is above the tolerance (default 1e-4).
"""

import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import T5ForConditionalGeneration

folder = sys.argv[1]
tolerance = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
check = load_file(f"{folder}/check.safetensors")
base = T5ForConditionalGeneration.from_pretrained(f"{folder}/base", torch_dtype=torch.float32)
model = PeftModel.from_pretrained(base, f"{folder}/adapter").eval()
with torch.no_grad():
    logits = model(
        input_ids=check["input_ids"],
        attention_mask=torch.ones_like(check["input_ids"]),
        decoder_input_ids=check["decoder_input_ids"],
    ).logits
difference = (logits - check["logits"]).abs().max().item()
# Without the adapter the logits differ: the LoRA or IA3 is really in use.
with torch.no_grad(), model.disable_adapter():
    plain = model(
        input_ids=check["input_ids"],
        attention_mask=torch.ones_like(check["input_ids"]),
        decoder_input_ids=check["decoder_input_ids"],
    ).logits
without = (plain - check["logits"]).abs().max().item()
print(f"largest logit difference with the adapter {difference:.2e}, without it {without:.2e}")
if difference > tolerance or without <= tolerance:
    sys.exit(1)
