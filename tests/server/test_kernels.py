"""Kernels started by the host have the %kohaku magics without %load_ext."""

from __future__ import annotations

import json
from typing import Any

from kohakuriver_lab.server.kernels import EXTENSION_ARG, is_ipython_kernel


def test_only_ipython_kernels_get_the_extension() -> None:
    assert is_ipython_kernel(["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "c.json"])
    assert not is_ipython_kernel(["R", "--slave", "-e", "IRkernel::main()", "--args", "c.json"])
    assert EXTENSION_ARG == "--ext=kohakuriver_lab"


async def test_host_kernels_have_the_magics(started_host: Any, jp_fetch: Any) -> None:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(response.body)["id"]
    manager = started_host.kernel_manager.get_kernel(kernel_id)
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply_text: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                reply_text.append(msg["content"]["text"])

        code = "print('kohaku' in get_ipython().magics_manager.magics['line'])"
        await client.execute_interactive(code, output_hook=hook, timeout=60)
        assert "".join(reply_text).strip() == "True"
    finally:
        client.stop_channels()
        await started_host.kernel_manager.shutdown_kernel(kernel_id, now=True)
