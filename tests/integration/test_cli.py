"""The `agent` CLI end to end through click's runner.

The model is the scripted Ollama server (`fake_ollama`: it replays queued replies over real HTTP,
so the real ChatOllama client and request shapes are exercised); SQL runs on the real sample
database. Tests that search documents load the real MiniLM embedding model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollagraph.agents.cli import main
from tests.fake_ollama import FakeOllama

pytestmark = pytest.mark.integration

COUNT_SQL = "SELECT COUNT(*) AS n FROM ducks"


def script_count_question(server: FakeOllama) -> None:
    server.enqueue_text("1. sql_query: count the ducks\n2. answer")
    server.enqueue_tool_call("sql_query", {"query": COUNT_SQL})
    server.enqueue_text("DONE")
    server.enqueue_text("There are **60** ducks in the table.")


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_ask_plain_prints_only_the_answer_on_stdout(fake_ollama: FakeOllama) -> None:
    script_count_question(fake_ollama)
    code, out, err = invoke("ask", "How many ducks are in the ducks table?", "--tools", "sql_query")
    assert code == 0, err
    assert out == "There are **60** ducks in the table.\n"
    assert "Plan" not in out and "sql_query" not in out
    # the real HTTP requests the toolkit sent
    chats = fake_ollama.chat_requests
    assert len(chats) == 4
    assert chats[0]["model"] == "smollm2:135m" and chats[0]["options"]["temperature"] == 0.0
    assert "tools" not in chats[0] or not chats[0]["tools"]  # the plan call binds no tools
    assert [t["function"]["name"] for t in chats[1]["tools"]] == ["sql_query"]
    assert "format" not in chats[1] or not chats[1]["format"]  # never tools and format together
    for body in chats:
        assert body["keep_alive"] == "5m" and body["stream"] is True
        num_ctx = body["options"]["num_ctx"]
        assert num_ctx % 1024 == 0 and 2048 <= num_ctx <= 8192
    assert chats[2]["messages"][-1]["role"] == "tool"
    assert "| 60 |" in chats[2]["messages"][-1]["content"]
    assert "| 60 |" in chats[3]["messages"][-1]["content"]  # the answer prompt has the result


def test_ask_verbose_shows_plan_tool_calls_and_timings_on_stderr(fake_ollama: FakeOllama) -> None:
    script_count_question(fake_ollama)
    code, out, err = invoke("ask", "How many ducks?", "-v", "--tools", "sql_query")
    assert code == 0, err
    assert out.strip() == "There are **60** ducks in the table."
    assert "Plan" in err and "1. sql_query: count the ducks" in err
    assert "sql_query" in err and COUNT_SQL in err  # tool name and arguments
    assert "| 60 |" in err  # the output preview
    assert "timings:" in err and "total" in err


def test_ask_json(fake_ollama: FakeOllama) -> None:
    script_count_question(fake_ollama)
    code, out, err = invoke("ask", "How many ducks?", "--json", "--tools", "sql_query")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["answer"] == "There are **60** ducks in the table."
    assert doc["plan"].startswith("1. sql_query")
    [call] = doc["tool_calls"]
    assert call["name"] == "sql_query" and call["args"] == {"query": COUNT_SQL} and call["ok"]
    assert "| 60 |" in call["output"] and call["seconds"] >= 0
    assert {"plan", "act", "tools", "answer", "total"} <= set(doc["timings"])
    assert doc["partial"] is False and doc["model"] == "smollm2:135m" and doc["thread_id"]


def test_ask_on_a_csv_file(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    csv = tmp_path / "Pond Birds.csv"
    csv.write_text("species,count\nmallard,12\nteal,3\n")
    fake_ollama.enqueue_text("1. sql_query")
    fake_ollama.enqueue_tool_call(
        "sql_query", {"query": "SELECT SUM(count) AS total FROM pond_birds"}
    )
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("15 birds.")
    code, out, err = invoke(
        "ask", "How many birds?", "--db", str(csv), "--json", "--tools", "sql_query"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert "| 15 |" in doc["tool_calls"][0]["output"]
    assert "Table pond_birds" in fake_ollama.chat_requests[1]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "/nonexistent/shop.duckdb"], "does not exist"),
        (["--docs", "/nonexistent/docs.duckdb"], "does not exist"),
        (["--tools", "sql_query,teleport"], "Unknown tool(s) teleport"),
        (["--max-steps", "0"], "`max_steps` must be at least 1"),
    ],
)
def test_bad_inputs_fail_with_one_clear_message(args: list[str], message: str) -> None:
    code, out, err = invoke("ask", "q", *args)
    assert code != 0
    assert message in err
    assert "Traceback" not in err and out == ""


def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database" * 500)
    code, _, err = invoke("ask", "q", "--db", str(bad))
    assert code == 1
    assert "is not a valid DuckDB database" in err and "Traceback" not in err


def test_ollama_not_running_is_a_clear_error() -> None:
    code, out, err = invoke("ask", "q", "--tools", "sql_query")  # conftest: closed port
    assert code == 1 and out == ""
    assert "Could not reach Ollama at http://127.0.0.1:9" in err
    assert "ollama serve" in err and "Traceback" not in err


def test_a_model_that_cannot_be_pulled_is_a_clear_error(fake_ollama: FakeOllama) -> None:
    code, out, err = invoke("ask", "q", "--model", "nosuch:1b", "--tools", "sql_query")
    assert code == 1 and out == ""
    assert "The model 'nosuch:1b' could not be found to pull" in err
    assert "choose a model you have: smollm2:135m" in err and "Traceback" not in err
    assert fake_ollama.chat_requests == []  # no model call was made


def test_a_missing_model_without_auto_pull_names_the_fix(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAGRAPH_AUTO_PULL", "false")
    code, _, err = invoke("ask", "q", "--model", "nosuch:1b", "--tools", "sql_query")
    assert code == 1
    assert "Model 'nosuch:1b' is not available" in err and "ollama pull nosuch:1b" in err
    assert fake_ollama.pull_requests == []


def test_invalid_config_file_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('model = "x"\nmax_steps = \n')
    code, _, err = invoke("ask", "q", "--config", str(config))
    assert code == 2
    assert "not valid TOML" in err and "line 2" in err


def test_empty_and_huge_questions_are_refused() -> None:
    assert invoke("ask", "   ")[0] == 2
    code, _, err = invoke("ask", "x" * 30_000)
    assert code == 2 and "limit is 20000" in err


def test_chat_transcript_commands_and_resume(fake_ollama: FakeOllama) -> None:
    script_count_question(fake_ollama)
    fake_ollama.enqueue_text("1. answer directly")
    fake_ollama.enqueue_text("DONE")
    fake_ollama.enqueue_text("You asked about ducks.")
    session_input = "\n".join(
        [
            "/help",
            "/tools",
            "How many ducks?",
            "/model other:1b",
            "/model smollm2:135m",
            "What did I ask?",
            "/thread",
            "/bogus",
            "/exit",
        ]
    )
    code, out, err = invoke("chat", "--tools", "sql_query", "--thread", "t-1", input=session_input)
    assert code == 0, err
    assert "There are **60** ducks in the table." in out
    assert "You asked about ducks." in out
    assert "/reset" in err  # help text
    assert "sql_query: Run one read-only SQL query" in err
    assert "model: other:1b" in err and "thread: t-1" in err
    assert "Unknown command /bogus" in err
    warm_up, *turns = fake_ollama.chat_requests
    assert warm_up["messages"] == [] and warm_up["keep_alive"] == "5m"  # loads the model first
    # the second question carried the first turn as history
    last_plan = turns[4]["messages"]
    assert [m["role"] for m in last_plan] == ["system", "user", "assistant", "user"]

    # a new process with --thread t-1 finds the saved conversation
    code, _, err = invoke(
        "chat", "--tools", "sql_query", "--thread", "t-1", input="/history\nquit\n"
    )
    assert code == 0
    assert "(2 earlier turns)" in err
    assert "user: How many ducks?" in err and "assistant: You asked about ducks." in err


def test_chat_reports_a_failed_turn_and_keeps_going(fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue_error("out of memory")
    script_count_question(fake_ollama)
    code, out, err = invoke("chat", "--tools", "sql_query", input="hello\nHow many ducks?\n/exit\n")
    assert code == 0
    assert "out of memory" in err
    assert "There are **60** ducks in the table." in out


def test_chat_without_a_server_fails_at_start() -> None:
    code, _, err = invoke("chat", "--tools", "sql_query", input="hello\n/exit\n")
    assert code == 1
    assert "Could not reach Ollama" in err and "Traceback" not in err


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from ollagraph.agents.cli import main\n"
        "try:\n    main(['--help'], prog_name='agent')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('langchain_core', 'langgraph', 'llama_index', 'torch', "
        "'duckdb', 'sentence_transformers', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: agent" in out.stdout
    assert "HEAVY []" in out.stdout


def test_constrained_strategy_sends_a_schema_and_no_tools(
    fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollagraph.agents.strategy import decision_schema

    monkeypatch.setenv("OLLAGRAPH_TOOL_STRATEGY", "constrained")
    from ollagraph.tools.registry import tool_specs

    fake_ollama.enqueue_text("1. sql_query")
    fake_ollama.enqueue_text(json.dumps({"tool": "sql_query", "arguments": {"query": COUNT_SQL}}))
    fake_ollama.enqueue_text(json.dumps({"final_answer": "60"}))
    fake_ollama.enqueue_text("60 ducks.")
    code, out, err = invoke("ask", "How many ducks?", "--json", "--tools", "sql_query")
    assert code == 0, err
    assert json.loads(out)["tool_calls"][0]["args"] == {"query": COUNT_SQL}
    act = fake_ollama.chat_requests[1]
    assert not act.get("tools")
    assert act["format"] == decision_schema(tool_specs(["sql_query"]))
