"""Sagas: business processes across services, as steps undone in reverse on failure.

The pure core: definitions (``Saga``, ``Step``, ``Send``, ``Local``, ``Call``,
``StartOn``), the events a saga's stream is made of, ``evolve`` (the fold) and
``decide`` (what to do with a start, a reply, a deadline or an operator's action), and
``SagaView``, the timeline an operator reads. It performs no I/O.

The I/O shell around it: ``SagaWorker`` drives every saga of a service from its stream
(with the ``SagaIndex`` of the log, the ``SagaTimer`` of deadlines and the
``SagaDriver`` that turns each input into one append), and ``SagaManager`` starts,
lists, shows, retries and aborts sagas. The guide is docs/guides/sagas.md.
"""

from eventcore.saga.decide import (
    Decision,
    InvokeCall,
    Request,
    RunLocal,
    SendCommand,
    decide,
    outstanding,
)
from eventcore.saga.definition import (
    COMPENSATION_RETRY,
    DEFAULT_TIMEOUT,
    Action,
    Call,
    Local,
    Saga,
    SagaContext,
    Send,
    StartOn,
    Step,
)
from eventcore.saga.driver import SagaDriver, saga_replies_topic
from eventcore.saga.events import (
    SAGA_EVENTS,
    PlannedStep,
    SagaAborted,
    SagaCompensated,
    SagaCompensationFailed,
    SagaCompensationRequested,
    SagaCompensationSucceeded,
    SagaCompleted,
    SagaEvent,
    SagaLateReply,
    SagaRetried,
    SagaStarted,
    SagaStepFailed,
    SagaStepRequested,
    SagaStepSucceeded,
    SagaStepTimedOut,
    SagaStuck,
)
from eventcore.saga.index import SagaIndex, SagaSummary
from eventcore.saga.inputs import Abort, DeadlineFired, Input, Reply, Retry, Start
from eventcore.saga.keys import Phase, correlation_id, idempotency_key
from eventcore.saga.manager import SagaManager
from eventcore.saga.state import TERMINAL, SagaState, SagaStatus, evolve, replay
from eventcore.saga.streams import saga_stream
from eventcore.saga.timeline import AttemptView, Entry, LateReplyView, SagaView, StepView
from eventcore.saga.timers import SagaTimer, TimerStatus
from eventcore.saga.worker import ENDED, SagaWorker, SagaWorkerStatus

__all__ = [
    "COMPENSATION_RETRY",
    "DEFAULT_TIMEOUT",
    "ENDED",
    "SAGA_EVENTS",
    "TERMINAL",
    "Abort",
    "Action",
    "AttemptView",
    "Call",
    "DeadlineFired",
    "Decision",
    "Entry",
    "Input",
    "InvokeCall",
    "LateReplyView",
    "Local",
    "Phase",
    "PlannedStep",
    "Reply",
    "Request",
    "Retry",
    "RunLocal",
    "Saga",
    "SagaAborted",
    "SagaCompensated",
    "SagaCompensationFailed",
    "SagaCompensationRequested",
    "SagaCompensationSucceeded",
    "SagaCompleted",
    "SagaContext",
    "SagaDriver",
    "SagaEvent",
    "SagaIndex",
    "SagaLateReply",
    "SagaManager",
    "SagaRetried",
    "SagaStarted",
    "SagaState",
    "SagaStatus",
    "SagaStepFailed",
    "SagaStepRequested",
    "SagaStepSucceeded",
    "SagaStepTimedOut",
    "SagaStuck",
    "SagaSummary",
    "SagaTimer",
    "SagaView",
    "SagaWorker",
    "SagaWorkerStatus",
    "Send",
    "SendCommand",
    "Start",
    "StartOn",
    "Step",
    "StepView",
    "TimerStatus",
    "correlation_id",
    "decide",
    "evolve",
    "idempotency_key",
    "outstanding",
    "replay",
    "saga_replies_topic",
    "saga_stream",
]
