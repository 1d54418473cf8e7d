"""Conformance of ``AzureBatchExecutor`` to ``concurrent.futures``, from CPython's tests.

The executor, wait, as_completed and shutdown tests of CPython 3.13.0's
``Lib/test/test_concurrent_futures/`` package (``executor.py``, ``test_wait.py``,
``test_as_completed.py``, ``test_shutdown.py``, ``util.py``; PSF licence, see each
file's header), adapted to pytest in the loky style: the upstream mixins
(``ExecutorTest``, ``WaitTests``, ``AsCompletedTests``, ``ExecutorShutdownTest``) are
kept as classes, ``util.ExecutorMixin`` gives each test ``self.executor``, an
``AzureBatchExecutor.local(max_workers=5)`` (upstream ``worker_count``), and one
``Test...`` class per module runs the mixin. Every executor of the session shares one
home, so one emulator daemon serves the suite (``conftest.py``). The functions the tasks
run are in ``helpers.py``. CI's Python 3.11 has no ``test.test_concurrent_futures``
package, so nothing is imported from ``test.``.

Common adaptations, not repeated below: unittest assertions became plain ``assert`` /
``pytest.raises``; ``result()``, ``map()`` and ``as_completed()`` calls that upstream
leaves unbounded get a 60 s bound (a hang fails instead of blocking the run; the bound
never decides a result); a task is a Python process on the emulator's node, so its
stdout goes to Batch task files: scripts check a file the task writes instead.

Upstream test                                  Status
=============================================  ==============================================
executor.py ExecutorTest
  test_submit                                  as-is
  test_submit_keyword                          as-is
  test_map                                     as-is
  test_map_exception                           as-is
  test_map_timeout                             adapted: sleeps [0, 0, 20] with timeout=4
                                               (upstream [0, 0, 6], timeout=5); same checks:
                                               TimeoutError after exactly [None, None]
  test_shutdown_race_issue12456                as-is
  test_no_stale_references                     as-is (the GIL-disabled branch dropped: it is
                                               for free-threaded CPython builds)
  test_max_workers_negative                    adapted: through ``local()``, and also through
                                               the ``AzureBatchExecutor(config, ...)``
                                               constructor
  test_free_reference                          as-is
test_wait.py WaitTests
  test_20369                                   as-is
  test_first_completed                         as-is
  test_first_completed_some_already_completed  as-is
  test_first_exception                         as-is
  test_first_exception_some_already_complete   as-is
  test_first_exception_one_already_failed      as-is
  test_all_completed                           as-is
  test_timeout                                 as-is
test_wait.py ThreadPoolWaitTests
  test_pending_calls_race                      adapted: upstream blocks 100 thread-pool calls
                                               on one threading.Event (tasks in other
                                               processes cannot share it); here 20 calls
                                               complete as the node runs them, wait() gets
                                               ALL_COMPLETED, and the results are checked
test_as_completed.py AsCompletedTests
  test_no_timeout                              as-is
  test_future_times_out                        as-is (subTest became a loop)
  test_duplicate_futures                       as-is
  test_free_reference_yielded_future           as-is (plain Futures: it checks the stdlib's
                                               as_completed, whatever the executor)
  test_correct_timeout_exception_msg           as-is (plain Futures, as above)
test_shutdown.py ExecutorShutdownTest
  test_run_after_shutdown                      as-is, plus map() after shutdown raising
                                               RuntimeError too
  test_interpreter_shutdown                    adapted: a script (sys.executable) submits a
                                               task that sleeps 1 s then writes "apple" to a
                                               file, and exits at once; it must exit 0 with
                                               empty stderr and stdout, and the file must
                                               appear with "apple" (the queued call is sent
                                               at exit; the task runs on the daemon, which
                                               outlives the script)
  test_submit_after_interpreter_shutdown       adapted: parametrised "idle" (upstream's thread
                                               pool variant) and "after-result" (its process
                                               pool variant, submit(id, 42).result() first);
                                               an atexit hook's submit() must raise
                                               "RuntimeError: cannot schedule new futures"
  test_hang_issue12364                         adapted: 20 calls of sleep(0.1) instead of 50
                                               (each is a process); after shutdown() every
                                               result is checked with timeout=0, i.e.
                                               shutdown(wait=True) waited for all of them
  test_cancel_futures                          adapted: same assertions (more than 20 of 50
                                               cancelled, the others done without an
                                               exception, at least one not cancelled), plus
                                               each non-cancelled call really ran. A thread
                                               pool starts calls at once, a Batch task a round
                                               trip later, so the test waits until a task has
                                               started (it leaves a marker file) before
                                               shutdown(cancel_futures=True)
  test_hang_gh83386                            adapted: script with shutdown(wait=False)
                                               right after submit(); exit 0, empty stderr,
                                               and the task's file appears
  test_hang_gh94440                            adapted: upstream bounds shutdown() with
                                               signal.alarm(5); pytest-timeout owns SIGALRM,
                                               so shutdown runs on a thread joined with the
                                               same 5 s bound
test_shutdown.py ThreadPoolShutdownTest / ProcessPoolShutdownTest (one test for both)
  test_threads_terminate /                     adapted: upstream counts ``executor._threads``
  test_processes_terminate                     / ``_processes`` (3) and joins them; the
                                               executor has no workers of its own (nodes run
                                               the calls) and tasks cannot share a
                                               semaphore, so: 3 calls, shutdown(), all done,
                                               and no thread the executor started is alive
  test_context_manager_shutdown                adapted: ``with`` block and map() results
                                               as-is; the joins of ``_threads`` /
                                               ``_processes`` became "no thread the executor
                                               started is alive", plus submit() after the
                                               block raising RuntimeError
  test_del_shutdown                            adapted: results as-is; the joins of the
                                               manager thread, processes and call queue
                                               became: the dropped executor is collected, and
                                               every thread it started ends (the garbage
                                               collector runs while waiting, as upstream's
                                               support.gc_collect(): what the executor leaves
                                               can sit in reference cycles, e.g. a handled
                                               Azure error's traceback)
  test_shutdown_no_wait                        adapted: results as-is; the joins became:
                                               every thread the executor started ends, while
                                               the (shut down) executor is still referenced
  test_cancel_futures_wait_false               adapted: script with shutdown(wait=False,
                                               cancel_futures=True); exit 0, empty stderr;
                                               the call may be cancelled before it starts
                                               (gh-116682), so the file is only checked if it
                                               was written
  test_thread_names_assigned                   not run: ``thread_name_prefix`` is a
                                               ThreadPoolExecutor parameter (no calls run on
                                               threads of the executor), and the test reads
                                               ``executor._threads``
  test_thread_names_default                    not run: as above

Not upstream: ``test_shutdown.py::test_submit_after_map_then_shutdown`` (shutdown(wait=True)
waits for a submit() made after a finished map()).

The other modules of the upstream package are out of this suite's scope: test_future.py
(the Future class itself, which JobFuture inherits), test_deadlock.py,
test_process_pool.py and test_init.py (ProcessPoolExecutor internals: broken pools,
``_processes``, mp contexts, initializers), test_thread_pool.py (thread pool internals).
"""
