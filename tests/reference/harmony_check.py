#!/usr/bin/env python3
"""Checks moecl's harmony rendering against two references, token for token.

1. The chat template path (what mlx-lm does): tests/reference/harmony_template.jinja (our own
   template written from the spec's description of gpt-oss's chat_template.jinja) rendered with
   jinja2 the way transformers renders chat templates (sandboxed environment, trim_blocks,
   lstrip_blocks, tojson = json.dumps(ensure_ascii=False), strftime_now pinned to the
   conversation's date), then encoded by Hugging Face `tokenizers` from a tokenizer.json made by
   `moecl tokenize --write-json` (add_special_tokens=False, as mlx-lm). Compared with
   `moecl harmony FILE`.
2. openai-harmony (the pinned package): render_conversation_for_completion (or ..._for_training
   without the generation prompt). Compared with `moecl harmony --package FILE`; the summary
   also says for which conversations the template and the package agree.

Usage: build/venv/bin/python tests/reference/harmony_check.py [--moecl build/moecl]
       [--tiktoken data/o200k_base.tiktoken] [--workdir build/harmony_check]
       [--template CHECKPOINT/chat_template.jinja]
(the venv comes from tests/reference/setup_venv.sh). Exit status 0 iff every comparison matches.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

W = {"location": "Tokyo", "unit": "celsius"}

# Conversations: Hugging Face message lists plus the template's kwargs.
CONVERSATIONS = [
    {"name": "single user turn",
     "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
    {"name": "reasoning low, identity",
     "reasoning_effort": "low", "model_identity": "You are a helpful test model.",
     "messages": [{"role": "user", "content": "Hi"}]},
    {"name": "reasoning high",
     "reasoning_effort": "high",
     "messages": [{"role": "user", "content": "Explain entropy in one line."}]},
    {"name": "developer instructions (system role)",
     "messages": [{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "Why is the sky blue?"}]},
    {"name": "developer instructions (developer role), multi-line",
     "messages": [{"role": "developer", "content": "Be terse.\nUse French."},
                  {"role": "user", "content": "Bonjour"}]},
    {"name": "history without analysis",
     "messages": [{"role": "user", "content": "a"},
                  {"role": "assistant", "content": "first answer"},
                  {"role": "user", "content": "b"}]},
    {"name": "history with analysis (dropped by the template)",
     "messages": [{"role": "user", "content": "What is 2 + 2?"},
                  {"role": "assistant", "thinking": "Simple arithmetic.", "content": "4."},
                  {"role": "user", "content": "And 3 + 3?"}]},
    {"name": "two turns with analysis",
     "messages": [{"role": "user", "content": "a"},
                  {"role": "assistant", "thinking": "t1", "content": "f1"},
                  {"role": "user", "content": "b"},
                  {"role": "assistant", "thinking": "t2", "content": "f2"},
                  {"role": "user", "content": "c"}]},
    {"name": "training form (no generation prompt)", "add_generation_prompt": False,
     "messages": [{"role": "user", "content": "Hi"},
                  {"role": "assistant", "thinking": "Greet back.", "content": "Hello!"}]},
    {"name": "unicode and whitespace",
     "messages": [{"role": "user", "content": "Café déjà vu — 中文!  \n\n  tabs\tand emoji 👩‍👩‍👧 "},
                  {"role": "assistant", "content": "D'accord.\n"},
                  {"role": "user", "content": "  leading spaces"}]},
    {"name": "tool call awaiting the result",
     "messages": [{"role": "user", "content": "Weather in Tokyo?"},
                  {"role": "assistant", "thinking": "Need the weather tool.",
                   "tool_calls": [{"function": {"name": "get_weather", "arguments": W}}]},
                  {"role": "tool", "content": "{\"temp\": 20, \"sky\": \"clear\"}"}]},
    {"name": "tool call then final answer",
     "messages": [{"role": "user", "content": "Weather in Tokyo?"},
                  {"role": "assistant", "thinking": "Need the weather tool.",
                   "tool_calls": [{"function": {"name": "get_weather", "arguments": W}}]},
                  {"role": "tool", "content": "20 degrees"},
                  {"role": "assistant", "content": "It is 20 °C."},
                  {"role": "user", "content": "Thanks"}]},
]

DATE = "2025-06-28"


def run(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr))
    return p.stdout


def moecl_input(conv):
    """The conversation as `moecl harmony` reads it (tool arguments as JSON text)."""
    msgs = []
    for m in conv["messages"]:
        m = dict(m)
        if "tool_calls" in m:
            calls = []
            for c in m["tool_calls"]:
                f = dict(c["function"])
                f["arguments"] = json.dumps(f["arguments"], ensure_ascii=False)
                calls.append({"function": f})
            m["tool_calls"] = calls
        msgs.append(m)
    doc = {"messages": msgs, "date": DATE,
           "add_generation_prompt": conv.get("add_generation_prompt", True)}
    for k in ("reasoning_effort", "model_identity"):
        if k in conv:
            doc[k] = conv[k]
    return json.dumps(doc, ensure_ascii=False)


def jinja_render(template, conv):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: DATE  # the date, pinned
    kwargs = {k: conv[k] for k in ("reasoning_effort", "model_identity") if k in conv}
    return env.from_string(template).render(
        messages=conv["messages"], add_generation_prompt=conv.get("add_generation_prompt", True),
        **kwargs)


def harmony_render(enc, conv):
    import openai_harmony as H
    effort = {"low": H.ReasoningEffort.LOW, "medium": H.ReasoningEffort.MEDIUM,
              "high": H.ReasoningEffort.HIGH}[conv.get("reasoning_effort", "medium")]
    sysc = H.SystemContent.new().with_conversation_start_date(DATE).with_reasoning_effort(effort)
    if "model_identity" in conv:
        sysc = sysc.with_model_identity(conv["model_identity"])
    msgs = [H.Message.from_role_and_content(H.Role.SYSTEM, sysc)]
    turns = conv["messages"]
    if turns and turns[0]["role"] in ("system", "developer"):
        msgs.append(H.Message.from_role_and_content(
            H.Role.DEVELOPER, H.DeveloperContent.new().with_instructions(turns[0]["content"])))
        turns = turns[1:]
    last_call = None
    for m in turns:
        if m["role"] == "user":
            msgs.append(H.Message.from_role_and_content(H.Role.USER, m["content"]))
        elif m["role"] == "assistant":
            if m.get("thinking") is not None:
                msgs.append(H.Message.from_role_and_content(H.Role.ASSISTANT, m["thinking"])
                            .with_channel("analysis"))
            if m.get("tool_calls"):
                f = m["tool_calls"][0]["function"]
                last_call = f["name"]
                msgs.append(H.Message.from_role_and_content(
                    H.Role.ASSISTANT, json.dumps(f["arguments"], ensure_ascii=False))
                    .with_channel("commentary").with_recipient("functions." + f["name"])
                    .with_content_type("json"))
            else:
                msgs.append(H.Message.from_role_and_content(H.Role.ASSISTANT, m["content"])
                            .with_channel("final"))
        elif m["role"] == "tool":
            msgs.append(H.Message.from_author_and_content(
                H.Author.new(H.Role.TOOL, "functions." + last_call), m["content"])
                .with_channel("commentary").with_recipient("assistant"))
    c = H.Conversation.from_messages(msgs)
    if conv.get("add_generation_prompt", True):
        return list(enc.render_conversation_for_completion(c, H.Role.ASSISTANT))
    return list(enc.render_conversation_for_training(c))


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moecl", default=os.path.join(ROOT, "build", "moecl"))
    ap.add_argument("--tiktoken", default=os.path.join(ROOT, "data", "o200k_base.tiktoken"))
    ap.add_argument("--workdir", default=os.path.join(ROOT, "build", "harmony_check"))
    ap.add_argument("--template", default=os.path.join(HERE, "harmony_template.jinja"),
                    help="a chat template to compare with, e.g. a checkpoint's "
                    "chat_template.jinja (default: our spec-derived one)")
    args = ap.parse_args()
    tiktoken = os.path.abspath(args.tiktoken)
    if os.path.basename(tiktoken) != "o200k_base.tiktoken":
        sys.exit("harmony_check: the rank file must be named o200k_base.tiktoken")
    # openai-harmony reads <base>/o200k_base.tiktoken instead of downloading it.
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = os.path.dirname(tiktoken)
    import openai_harmony as H
    from tokenizers import Tokenizer

    os.makedirs(args.workdir, exist_ok=True)
    tj = os.path.join(args.workdir, "tokenizer.json")
    if not os.path.exists(tj):
        run([args.moecl, "tokenize", "--tiktoken", tiktoken, "--write-json", tj])
    hf = Tokenizer.from_file(tj)
    enc = H.load_harmony_encoding(H.HarmonyEncodingName.HARMONY_GPT_OSS)
    template = open(args.template, encoding="utf-8").read()

    failures = 0
    agree = 0
    for conv in CONVERSATIONS:
        path = os.path.join(args.workdir, "conv.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(moecl_input(conv))
        ours_tpl = json.loads(run([args.moecl, "harmony", "--tokenizer", tiktoken, path]))
        ours_pkg = json.loads(run([args.moecl, "harmony", "--package", "--tokenizer", tiktoken,
                                   path]))
        ours_text = run([args.moecl, "harmony", "--text", path])
        text = jinja_render(template, conv)
        ref_tpl = hf.encode(text, add_special_tokens=False).ids
        ref_pkg = harmony_render(enc, conv)
        checks = [("template text", ours_text == text, None),
                  ("template ids", ours_tpl == ref_tpl, (ours_tpl, ref_tpl)),
                  ("openai-harmony ids", ours_pkg == ref_pkg, (ours_pkg, ref_pkg))]
        same = ref_tpl == ref_pkg
        agree += same
        status = "ok  " if all(c[1] for c in checks) else "FAIL"
        print("%s %-52s %4d ids  template %s openai-harmony" %
              (status, conv["name"], len(ref_tpl), "==" if same else "!="))
        for name, ok, pair in checks:
            if ok:
                continue
            failures += 1
            if pair:
                i = first_diff(*pair)
                print("     %s differ at %d: ours %s, reference %s" %
                      (name, i, pair[0][i:i + 8], pair[1][i:i + 8]))
            else:
                i = first_diff(ours_text, text)
                print("     %s differs at byte %d: ours %r, reference %r" %
                      (name, i, ours_text[i:i + 40], text[i:i + 40]))
    n = len(CONVERSATIONS)
    print("%d conversations: %d comparisons failed; template and openai-harmony agree on %d"
          % (n, failures, agree))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
