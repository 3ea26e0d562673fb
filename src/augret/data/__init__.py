"""M-BEIR records, ids, layout, streamed readers and users' own collections.

The ground floor of augret: it imports no other stage.
"""

from augret.data.ids import (
    DATASETS,
    MBEIR_TEST_TASKS,
    TASKS,
    EvalTask,
    eval_task,
    hash_did,
    hash_qid,
    unhash_did,
    unhash_qid,
)
from augret.data.instructions import InstructionTable, read_instructions
from augret.data.jsonl import iter_jsonl, write_jsonl
from augret.data.mbeir import MBEIRDir, TaskFiles, iter_candidates, iter_queries
from augret.data.qrels import Qrels, read_qrels, write_qrels
from augret.data.records import Candidate, Query
from augret.data.text import format_string, instructed_text

__all__ = [
    "DATASETS",
    "MBEIR_TEST_TASKS",
    "TASKS",
    "Candidate",
    "EvalTask",
    "InstructionTable",
    "MBEIRDir",
    "Qrels",
    "Query",
    "TaskFiles",
    "eval_task",
    "format_string",
    "hash_did",
    "hash_qid",
    "instructed_text",
    "iter_candidates",
    "iter_jsonl",
    "iter_queries",
    "read_instructions",
    "read_qrels",
    "unhash_did",
    "unhash_qid",
    "write_jsonl",
    "write_qrels",
]
