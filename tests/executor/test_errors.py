"""The exception tree (batchexecutor._errors): shape, messages, pickling, no secrets."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from batchexecutor import _errors
from batchexecutor._errors import (
    BatchExecutorError,
    CorruptObjectError,
    ObjectExistsError,
    ObjectNotFoundError,
    RemoteError,
    SerializationError,
    StorageError,
    TaskFailedError,
    VersionMismatchError,
)

SIGNATURE = "c2VjcmV0LXNpZ25hdHVyZS0wMTIzNDU2Nzg5"

WRITER = {"python": "3.12", "cloudpickle": "3.1.1", "batchexecutor": "0.1.0"}
READER = {"python": "3.11", "cloudpickle": "3.1.1", "batchexecutor": "0.1.0"}

#: One instance of every exception in the module, with every attribute set.
EXAMPLES: list[BatchExecutorError] = [
    BatchExecutorError("base"),
    SerializationError("callable f", "TypeError: cannot pickle '_thread.lock' object"),
    SerializationError("function of job 'j'", "ModuleNotFoundError: x", action="unpickle"),
    VersionMismatchError("input of chunk 3", writer=WRITER, reader=READER),
    CorruptObjectError("outcome of chunk 3 of job 'j'", "truncated after 2 records"),
    RemoteError(
        "ValueError",
        "boom",
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\nValueError: boom\n',
        item=7,
        task_id="12",
        unpicklable="TypeError: cannot pickle 'generator' object",
    ),
    TaskFailedError(
        job_id="j",
        task_id="12",
        chunk=12,
        exit_code=137,
        failure_info="UserError/TaskEnded: killed",
        stderr_tail="line 1\nline 2\n",
        reason="killed",
    ),
    StorageError("cannot read j/result: HTTP 503", name="j/result"),
    ObjectNotFoundError("j/result does not exist", name="j/result"),
    ObjectExistsError("j/result already exists", name="j/result"),
    _errors.JobError("job 'j' ended (UserTerminate) before this work ran", job_id="j"),
    _errors.JobNotFoundError("no job 'j' in the Batch account", job_id="j"),
    _errors.ForeignJobError("job 'j' was not created by batchexecutor", job_id="j"),
    _errors.IncompleteJobError(
        "the submission of job 'j' was cut short", job_id="j", added=40, planned=100
    ),
    _errors.JobNotDoneError("job 'j' is still running", job_id="j"),
    _errors.NodeEnvironmentError(
        "the nodes of pool 'p' cannot run job 'j': Python version mismatch",
        job_id="j",
        node_id="tvm-1",
        exit_code=65,
        stderr="batchexecutor: Python version mismatch: the client runs Python 3.11 ...\n",
    ),
    _errors.OutputFilesError(
        job_id="j",
        task_id="7",
        failure_info="usererror FileUploadAccessDenied: access denied",
        result=[1, 2, 3],
    ),
]


def _all_exception_classes() -> set[type[BaseException]]:
    return {
        value
        for value in vars(_errors).values()
        if isinstance(value, type) and issubclass(value, BatchExecutorError)
    }


def test_every_exception_has_an_example() -> None:
    assert {type(error) for error in EXAMPLES} == _all_exception_classes()
    assert set(_errors.__all__) == {cls.__name__ for cls in _all_exception_classes()}


def test_tree_matches_the_docstring() -> None:
    assert issubclass(VersionMismatchError, SerializationError)
    assert issubclass(CorruptObjectError, SerializationError)
    assert issubclass(ObjectNotFoundError, StorageError)
    assert issubclass(ObjectExistsError, StorageError)
    for cls in _all_exception_classes():
        assert cls.__name__ in (_errors.__doc__ or "")
        assert issubclass(cls, BatchExecutorError)


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_round_trips_through_pickle(error: BatchExecutorError, dumps: object) -> None:
    assert callable(dumps)
    copy = pickle.loads(dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_notes_survive_pickling() -> None:
    error = StorageError("x", name="a/b")
    error.__notes__ = ["a note"]
    assert pickle.loads(pickle.dumps(error)).__notes__ == ["a note"]


def test_serialization_error_names_what_and_why() -> None:
    error = SerializationError("argument 2 of submit()", "TypeError: cannot pickle 'lock'")
    assert str(error) == "cannot pickle argument 2 of submit(): TypeError: cannot pickle 'lock'"
    assert (error.what, error.action) == ("argument 2 of submit()", "pickle")


def test_version_mismatch_names_both_sides() -> None:
    error = VersionMismatchError("the function", writer=WRITER, reader=READER)
    text = str(error)
    assert "python 3.12" in text and "python 3.11" in text
    assert error.differing == ["python"]
    assert text.index("3.12") < text.index("3.11")  # writer first, then reader
    assert "start task" in text


def test_corrupt_object_names_the_object() -> None:
    error = CorruptObjectError("outcome of chunk 3 of job 'j'", "truncated after 2 records")
    assert str(error) == "outcome of chunk 3 of job 'j' is corrupt: truncated after 2 records"


def test_remote_error_shows_the_remote_traceback_like_process_pool() -> None:
    error = RemoteError("ValueError", "boom", "Traceback ...\nValueError: boom\n", item=3)
    assert str(error).startswith("ValueError raised remotely by item 3\n" + '"""')
    assert str(error).endswith('ValueError: boom\n"""')
    assert error.task_id is None and error.unpicklable is None


def test_task_failed_error_says_what_is_known() -> None:
    error = TaskFailedError(job_id="j", chunk=4, reason="no outcome object is in the store")
    assert str(error) == (
        "the task of chunk 4 of job 'j' ended without an outcome "
        "(no outcome object is in the store)"
    )
    error = TaskFailedError(task_id="4", exit_code=3, stderr_tail="oops\n")
    assert (
        str(error)
        == "task '4' ended without an outcome; exit code 3\nstderr (last lines):\n    oops"
    )


def test_task_failed_error_masks_secrets_from_node_output() -> None:
    url = f"https://a.blob.core.windows.net/c?sv=2024&sp=rw&sig={SIGNATURE}"
    error = TaskFailedError(
        task_id="1",
        failure_info=f"could not reach {url}",
        stderr_tail=f"BATCHEXECUTOR_STORE={url}\nAccountKey={SIGNATURE};\n",
    )
    assert SIGNATURE not in str(error)
    assert SIGNATURE not in repr(error)
    assert SIGNATURE not in repr(vars(error))
