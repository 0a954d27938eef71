"""`agent eval`: answer quality of a model through ollagraph's agent and through a baseline agent.

- `questions`: the question-set format (YAML) and its loading; the public set lies in
  `ollagraph/data/eval/questions.yaml`.
- `checkers`: result-set match for SQL, fact inclusion for answers, tool choice, refusals and
  tool-call validity.
- `runner`: runs each question through ollagraph's graph (a fresh thread each) and through
  LangGraph's prebuilt tool-calling agent with the same model and tool functions.
- `report`: the per-system summary (a markdown table) and the per-question JSON.

Nothing heavy is imported here; the runner imports LangChain and LangGraph when it runs.
"""

from __future__ import annotations
