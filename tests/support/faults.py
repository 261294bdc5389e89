"""What the fault tests share: the slowed Celery app and the shortened job life-cycle periods of their workers."""

# A Celery app whose listed functions sleep (AESP_FAULT_SLOW) so that a kill lands half-way through a job.
SLOW_APP = "tests.integration.faults.slow_app"
# Heartbeat, staleness and sweep periods shortened through the environment (production: 15 s, 60 s, 30 s); the
# broker keeps its production visibility timeout.
LIFE_CYCLE = {"AESP_JOB_HEARTBEAT_S": "1", "AESP_JOB_STALE_S": "8", "AESP_JOB_SWEEP_S": "2"}
