"""Ollama (Go text/template) chat templates equivalent to a model's Hugging Face (Jinja) one.

Ollama renders prompts with Go templates over ``.System``, ``.Messages``, ``.Tools``, ``.Think`` and
``.IsThinkSet``; a model shared from Hugging Face brings only its Jinja template. The two families
adam exports use fixed markers (ChatML for Qwen and SmolLM, header ids for Llama 3), so the Go
template is written for the family and the stop strings come with it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

CHATML_STOPS = ["<|im_start|>", "<|im_end|>"]
LLAMA3_STOPS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# a literal default system prompt written into a ChatML Jinja template (SmolLM2, Qwen2.5)
_CHATML_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)([^{}'\"<|]+?)<\|im_end\|>")

_CHATML_TOOLS = """\
# Tools

You can call the functions below. Their signatures are listed inside <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{{ json . }}
{{- end }}
</tools>

To call one, reply with a JSON object holding its name and arguments inside <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>"""


def ollama_template(source: Mapping[str, Any] | str | None, architecture: str) -> tuple[str, dict[str, Any]]:
    """The Go template and Ollama parameters (stop strings) for a HF chat template or tokenizer config."""
    jinja = _jinja_text(source)
    for family, (matches, build) in FAMILIES.items():
        if matches(jinja, architecture):
            logger.debug("using the %s Ollama template for %s", family, architecture)
            return build(jinja)
    logger.warning(
        "no Ollama template matches the chat template of this %s model; using a plain one without stop strings",
        architecture,
    )
    return PLAIN_TEMPLATE, {}


def _jinja_text(source: Mapping[str, Any] | str | None) -> str:
    """The Jinja chat template from a template string or a tokenizer_config.json mapping."""
    if source is None or isinstance(source, str):
        return source or ""
    template = source.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one, else the first
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else ""


def _is_chatml(jinja: str, architecture: str) -> bool:
    return "<|im_start|>" in jinja or (not jinja and architecture in ("qwen2", "qwen3"))


def _is_llama3(jinja: str, architecture: str) -> bool:
    return "<|start_header_id|>" in jinja


def chatml_template(jinja: str = "") -> tuple[str, dict[str, Any]]:
    """ChatML turns (``<|im_start|>role ... <|im_end|>``); tools and the thinking switch when the HF one has them."""
    default = _CHATML_DEFAULT_SYSTEM.search(jinja)
    system = (
        f"{{{{- $system := or .System {_go_string(default.group(1).strip())} }}}}"
        if default
        else "{{- $system := .System }}"
    )
    tools = "tools" in jinja or not jinja
    header = (
        f"{system}\n"
        "{{- if or $system .Tools }}<|im_start|>system\n"
        "{{ if $system }}{{ $system }}{{ end }}"
    )
    if tools:
        header += "\n{{- if .Tools }}{{ if $system }}\n\n{{ end }}" + _CHATML_TOOLS + "\n{{- end }}"
    header += "<|im_end|>\n{{ end }}"
    assistant_tools = (
        "\n{{- range $m.ToolCalls }}\n<tool_call>\n"
        '{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}\n'
        "</tool_call>\n{{- end }}"
        if tools
        else ""
    )
    tool_turn = (
        '\n{{- else if eq $m.Role "tool" }}<|im_start|>user\n<tool_response>\n{{ $m.Content }}\n'
        "</tool_response><|im_end|>\n"
        if tools
        else ""
    )
    # Qwen3 closes an empty think block when thinking is switched off, exactly as enable_thinking=False does
    no_think = (
        "{{ if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}" if "enable_thinking" in jinja else ""
    )
    turns = (
        "\n{{- range $i, $m := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        '{{- if eq $m.Role "user" }}<|im_start|>user\n{{ $m.Content }}<|im_end|>\n'
        '{{ else if eq $m.Role "assistant" }}<|im_start|>assistant\n{{ $m.Content }}'
        f"{assistant_tools}"
        "{{ if not $last }}<|im_end|>\n{{ end }}"
        f"{tool_turn}"
        "{{ end }}\n"
        '{{- if and $last (ne $m.Role "assistant") }}<|im_start|>assistant\n'
        f"{no_think}{{{{ end }}}}\n"
        "{{- end }}"
    )
    return header + turns, {"stop": list(CHATML_STOPS)}


def llama3_template(jinja: str = "") -> tuple[str, dict[str, Any]]:
    """Llama 3 header turns (``<|start_header_id|>role<|end_header_id|> ... <|eot_id|>``); BOS is the tokenizer's."""
    template = (
        "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}\n"
        "{{- range $i, $m := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        '{{- if ne $m.Role "system" }}<|start_header_id|>'
        '{{ if eq $m.Role "tool" }}ipython{{ else }}{{ $m.Role }}{{ end }}<|end_header_id|>\n\n'
        '{{ $m.Content }}{{ if or (not $last) (ne $m.Role "assistant") }}<|eot_id|>{{ end }}{{ end }}\n'
        '{{- if and $last (ne $m.Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}\n'
        "{{- end }}"
    )
    return template, {"stop": list(LLAMA3_STOPS)}


PLAIN_TEMPLATE = "{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}"


def _go_string(text: str) -> str:
    """A Go string literal for ``text`` (JSON's escapes are a subset of Go's)."""
    return json.dumps(text, ensure_ascii=False)


FAMILIES: dict[str, tuple[Callable[[str, str], bool], Callable[[str], tuple[str, dict[str, Any]]]]] = {
    "chatml": (_is_chatml, chatml_template),
    "llama3": (_is_llama3, llama3_template),
}
