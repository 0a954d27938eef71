"""User tools through the `agent` CLI: `agent tools`, `--tools FILE`, entry points, clear errors.

The entry-point package is "installed" the way pip lays one out (a `demo_tools-0.1.dist-info/`
with METADATA and entry_points.txt next to the package) in a temporary folder that is put on
sys.path (in-process tests) or PYTHONPATH (subprocess tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollagraph.agents.cli import main
from ollagraph.tools import user_tools
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "user_tools"
GOOD = FIXTURES / "good_tools.py"


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    user_tools.clear_caches()
    yield
    user_tools.clear_caches()


@pytest.fixture
def demo_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(FIXTURES / "demo_site", site)
    return site


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_agent_tools_lists_built_ins_and_file_tools_with_their_source() -> None:
    code, out, err = invoke("tools", "--tools", f"{GOOD}:word_count,tag_items")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("✓ sql_query ") and lines[0].endswith("[built-in]")
    word = next(line for line in lines if " word_count " in line)
    assert "Count the words in a text." in word and f"[file {GOOD.resolve()}]" in word
    assert word.startswith("✓")  # loaded file tools are enabled
    assert not any("slow_echo" in line for line in lines)


def test_agent_tools_json_with_an_installed_package(
    demo_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(demo_site))
    code, out, err = invoke("tools", "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = {row["name"]: row for row in doc["tools"]}
    assert rows["sql_query"]["source"] == "built-in" and rows["sql_query"]["enabled"]
    assert rows["shout"] == {
        "name": "shout",
        "source": "entry point",
        "origin": "package demo-tools 0.1 (entry point shout = demo_tools:shout)",
        "description": "Upper-case a text.",
        "enabled": False,  # installed tools are enabled by naming them
    }
    assert {"reverse_words", "count_vowels"} <= set(rows)
    assert any("broken-tools 0.2" in p for p in doc["problems"])


def test_agent_tools_in_a_subprocess_with_the_package_on_pythonpath(demo_site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(demo_site)}
    done = subprocess.run(
        [sys.executable, "-m", "ollagraph.agents.cli", "tools"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shout = next(line for line in done.stdout.splitlines() if " shout " in line)
    assert "[package demo-tools 0.1 (entry point shout = demo_tools:shout)]" in shout
    # a broken entry point is a warning naming its package, and the others still load
    assert "Warning: package broken-tools 0.2 (entry point missing = " in done.stderr
    assert "ModuleNotFoundError" in done.stderr and "Traceback" not in done.stderr
    assert "`undocumented` in package demo-tools 0.1" in done.stderr
    # named in --tools, an installed tool is accepted; a misspelt one lists the choices
    done = subprocess.run(
        [sys.executable, "-m", "ollagraph.agents.cli", "ask", "q", "--tools", "shoutt"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Error: Unknown tool(s) shoutt; choose from" in done.stderr
    assert "shout" in done.stderr and "broken-tools 0.2" in done.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("def broken(:\n", "has a syntax error on line 1"),
        ("import ollagraph_nope\n", "(line 1): ModuleNotFoundError: No module named"),
        (
            "def f(x) -> str:\n    '''Do.\n\n    Args:\n        x: X.\n    '''\n    return x\n",
            "Tool `f` in file {path}: parameter `x` has no type annotation.",
        ),
    ],
)
@pytest.mark.parametrize("command", ["ask", "chat", "tools"])
def test_a_broken_tools_file_is_one_clear_error(
    tmp_path: Path, command: str, content: str, expected: str
) -> None:
    path = tmp_path / "mine.py"
    path.write_text(content)
    args = [command, "q"] if command == "ask" else [command]
    code, out, err = invoke(*args, "--tools", str(path))
    assert code == 2
    assert err.startswith("Error: ") and expected.format(path=path) in err
    assert "Traceback" not in err and out == ""


def test_a_missing_tools_file_and_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("ask", "q", "--tools", "mytools.py:f")
    assert code == 2
    assert f"Error: Tool file {tmp_path / 'mytools.py'} does not exist." in err


def test_ask_calls_a_user_tool_natively_and_reads_its_result(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_text("1. word_count: count the words\n2. answer")
    fake_ollama.enqueue_tool_call("word_count", {"text": "one two three four"})
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("The text has 4 words.")
    code, out, err = invoke(
        "ask", "How many words are in 'one two three four'?", "--tools", f"{GOOD}:word_count"
    )
    assert code == 0, err
    assert out == "The text has 4 words.\n"
    chats = fake_ollama.chat_requests
    offered = [t["function"]["name"] for t in chats[1].get("tools") or []]
    assert "word_count" in offered
    assert chats[2]["messages"][-1]["role"] == "tool"
    assert chats[2]["messages"][-1]["content"] == "4"


def test_a_failing_user_tool_is_reported_to_the_model_under_constrained_decoding(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAGRAPH_TOOL_STRATEGY", "constrained")
    fake_ollama.enqueue_text("1. fail_loudly\n2. answer")
    fake_ollama.enqueue_text('{"tool": "fail_loudly", "arguments": {"reason": "boom"}}')
    fake_ollama.enqueue_text('{"final_answer": "DONE"}')
    fake_ollama.enqueue_text("The tool failed.")
    code, _, err = invoke(
        "ask", "Please fail", "--tools", "sql_query", "--tools", f"{GOOD}:fail_loudly"
    )
    assert code == 0, err
    chats = fake_ollama.chat_requests
    consts = [c["properties"].get("tool") for c in chats[1]["format"]["anyOf"]]
    assert {"const": "fail_loudly"} in consts and {"const": "sql_query"} in consts
    tool_result = json.dumps(chats[2]["messages"])
    assert "`fail_loudly` with arguments" in tool_result
    assert "RuntimeError: boom" in tool_result


def test_chat_lists_and_calls_a_user_tool(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_text("1. tag_items\n2. answer")
    fake_ollama.enqueue_tool_call("tag_items", {"items": ["a", "b"], "tags": {"a": 2}})
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("Tagged: a#2, b#0.")
    result = CliRunner().invoke(
        main,
        ["chat", "--tools", "sql_query", "--tools", f"{GOOD}:tag_items"],
        input="/tools\nTag a and b, please.\n/exit\n",
    )
    assert result.exit_code == 0, result.stderr
    assert "tag_items: Tag each item with a number." in result.stderr
    assert "Tagged: a#2, b#0." in result.stdout
    chats = [c for c in fake_ollama.chat_requests if c.get("messages")]  # not the preload
    assert [t["function"]["name"] for t in chats[1]["tools"]] == ["sql_query", "tag_items"]
    assert chats[2]["messages"][-1]["role"] == "tool"
    assert chats[2]["messages"][-1]["content"] == '["a#2", "b#0"]'


def test_ask_calls_an_installed_packages_tool_under_constrained_decoding(
    fake_ollama: FakeOllama, demo_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(demo_site))
    monkeypatch.setenv("OLLAGRAPH_TOOL_STRATEGY", "constrained")
    fake_ollama.enqueue_text("1. count_vowels\n2. answer")
    fake_ollama.enqueue_text('{"tool": "count_vowels", "arguments": {"text": "Quackers"}}')
    fake_ollama.enqueue_text('{"final_answer": "DONE"}')
    fake_ollama.enqueue_text("Quackers has 3 vowels.")
    code, out, err = invoke("ask", "Vowels in Quackers?", "--tools", "count_vowels", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["answer"] == "Quackers has 3 vowels."
    [call] = doc["tool_calls"]
    assert call["name"] == "count_vowels" and call["ok"] and call["output"] == "3"
    chats = fake_ollama.chat_requests
    consts = [c["properties"].get("tool") for c in chats[1]["format"]["anyOf"]]
    assert {"const": "count_vowels"} in consts
