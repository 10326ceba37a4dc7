"""The benchmark of generate() for conformer generation; a cell's task is `cell.run_cell`.

Nothing is fetched at run time: the Hugging Face Hub is switched off here, in every process that imports the
benchmark, before any of its modules imports transformers (huggingface_hub reads HF_HUB_OFFLINE once, when it
is first imported; `model.hub_offline()` covers a process that imported it earlier).
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
