"""wordpipe's errors: one tree, whose two branches say the CLI's exit code.

    WordpipeError
     ├── UsageError (exit 2): what was asked is wrong; fix it and ask again
     │    ├── ConfigError          a setting                       (config.py, here)
     │    │    └── TokenizerError  the tokenizer's user dictionary (tokenize.py)
     │    ├── SourceError          input paths                     (ingest/sources.py)
     │    ├── SourceTopicError     a source topic's spec           (source_topics.py)
     │    ├── PolicyError          an autoscaling policy           (autoscaler/policy.py)
     │    ├── ScenarioError        a simulator scenario            (autoscaler/simulate.py)
     │    ├── CodecError           a record that does not decode   (codec.py)
     │    │    └── NoText          a source record holds no text   (source_topics.py)
     │    ├── OverlapError         a window that overlaps counted ones: workers disagree on
     │    │                        window_chunks                   (aggregator/state.py)
     │    ├── BadBody              a POST /v1/words body           (aggregator/lookup.py)
     │    └── InUse                a state directory another stack holds (statedir/directory.py)
     └── UnavailableError (exit 1): something wordpipe depends on failed or is away; a retry may do
          ├── KafkaUnavailable     Kafka                           (kafka/clients.py)
          │    ├── Superseded      another aggregator owns a shard now (aggregator/changelog.py)
          │    └── Fenced          a writer's lease on a chunks generation lapsed (ingest/chunk_topics.py)
          ├── ChangelogError       a shard's changelog does not replay (aggregator/state.py)
          ├── LookupProcessError   the results API's lookup process (aggregator/lookup_process.py)
          ├── Crashed              a record killed the child reading it (pipeline/worker/isolation.py)
          ├── Saturated            Kafka takes records slower than they come (kafka/producing.py)
          ├── BrokerError          the embedded broker             (kafka/broker.py)
          ├── BackendError         where workers run               (cluster/backend.py)
          │    └── RecordIOError   the Mesos master's event stream (cluster/mesos/recordio.py)
          ├── RunError             `wordpipe run`                  (run.py)
          ├── StackError           `wordpipe up`                   (stack.py)
          ├── Damaged              a state directory that does not verify (statedir/frames.py)
          ├── JournalError         the state directory's journal   (statedir/journal.py)
          ├── NotDurable           an upload the state directory did not take (ingest/durability.py)
          ├── PortUnavailable      a service's port is taken       (web/server.py)
          ├── Abandoned            an upload held open too long    (ingest/api.py)
          └── RequestFailed        an HTTP API answered an error, or nothing (client.py)

`cli.main` catches the two branches. A handler's `web.HttpError` is not in the tree: it is
an HTTP answer on its way out (pipeline/web/app.py), never raised to a caller.
"""

from __future__ import annotations


class WordpipeError(Exception):
    """Every error wordpipe raises to its callers."""

    exit_code = 1


class UsageError(WordpipeError, ValueError):
    """What was asked is wrong: a setting, an input, a policy. The message says what and where."""

    exit_code = 2


class ConfigError(UsageError):
    """A bad setting; the message names the setting, where it came from, and what is wrong.
    Here rather than in config.py, so that what config.py imports may raise it."""


class UnavailableError(WordpipeError, RuntimeError):
    """Something wordpipe depends on failed or is away (Kafka, a backend, a service)."""

    exit_code = 1
