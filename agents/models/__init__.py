"""Language models: the Model protocol (protocol.py), the backends that implement it (hf,
openai_compatible, vllm_backend, scripted), the factory that makes one from a spec string
(backends.py), PEFT adapters and their base models, and the servers they run in."""
