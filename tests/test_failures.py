"""The stop summary reads Snakemake's own error blocks (these are copied from real runs' logs)."""

from __future__ import annotations

from aoideft.workflow.failures import failed_jobs, stop_summary, without_quoted_logs

SLURM_LOG = """\
Job 12 has been submitted with SLURM jobid 17 (log: /r/.snakemake/slurm_logs/rule_automl_train/final_automl_0/17.log).
[Thu Nov 26 04:19:44 2026]
Error in rule automl_train:
    message: SLURM-job '17' failed, SLURM status is: 'CANCELLED'. Detailed failure reason unavailable (status command is not 'sacct').For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 12
    input: final_automl/round0/proposals.json, preflight/checks.json
    output: final_automl/rec0/result.json
    log: logs/final_automl/rec0.log, /r/.snakemake/slurm_logs/rule_automl_train/final_automl_0/17.log (check log file(s) for error details)
    external_jobid: 17
Logfile /r/.snakemake/slurm_logs/rule_automl_train/final_automl_0/17.log:
================================================================================
localrule automl_train:
    jobid: 0
Error in rule automl_train:
    jobid: 0
    output: final_automl/rec0/result.json
    log: logs/final_automl/rec0.log (check log file(s) for error details)
================================================================================
Trying to restart job 12.
Job 12 has been submitted with SLURM jobid 19 (log: /r/.snakemake/slurm_logs/rule_automl_train/final_automl_0/19.log).
[Thu Nov 26 04:20:10 2026]
Error in rule automl_train:
    message: SLURM-job '19' failed, SLURM status is: 'CANCELLED'. Detailed failure reason unavailable (status command is not 'sacct').For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 12
    input: final_automl/round0/proposals.json, preflight/checks.json
    output: final_automl/rec0/result.json
    log: logs/final_automl/rec0.log, /r/.snakemake/slurm_logs/rule_automl_train/final_automl_0/19.log (check log file(s) for error details)
    external_jobid: 19
Shutting down, this might take some time.
Exiting because a job execution failed. Look above for error messages
"""

LOCAL_LOG = """\
Error in rule deft_assemble:
    jobid: 31
    input: iter1/mining/mined.csv
    output: iter1/dataset/train_combined_iter1.csv
    log: logs/iter1/assemble.log (check log file(s) for error details)

Exiting because a job execution failed. Look above for error messages
"""


def test_a_retried_slurm_job_is_one_failure_with_its_last_state_and_logs():
    [job] = failed_jobs(SLURM_LOG)
    assert (job.rule, job.output, job.attempts) == ("automl_train", "final_automl/rec0/result.json", 2)
    assert (job.slurm_job, job.slurm_state) == ("19", "CANCELLED")
    assert job.logs == ("logs/final_automl/rec0.log",
                        "/r/.snakemake/slurm_logs/rule_automl_train/final_automl_0/19.log")


def test_the_summary_names_the_job_how_it_ended_and_the_resume_command():
    summary = stop_summary(SLURM_LOG, ["snakemake", "--profile", "slurm", "final_automl/best.pth"])
    assert "The run stopped: 1 job failed." in summary
    assert ("automl_train -> final_automl/rec0/result.json: SLURM job 19 ended CANCELLED (after 2 attempts)"
            in summary)
    assert "scancel" in summary
    assert summary.rstrip("=\n").endswith("snakemake --profile slurm final_automl/best.pth")


def test_a_local_failure_points_at_its_log():
    summary = stop_summary(SLURM_LOG + LOCAL_LOG, ["snakemake", "--cores", "2"])
    assert "The run stopped: 2 jobs failed." in summary
    assert ("deft_assemble -> iter1/dataset/train_combined_iter1.csv: the job exited with an error; "
            "logs: logs/iter1/assemble.log") in summary


def test_quoted_job_logs_are_not_the_main_process_lines():
    main = without_quoted_logs(SLURM_LOG)
    assert "localrule automl_train:" not in main and main.count("Error in rule") == 2
    assert "Trying to restart job 12." in main


def test_no_error_blocks_means_no_failed_jobs():
    assert failed_jobs("Nothing to be done.\n") == []
