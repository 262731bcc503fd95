"""Webhooks: a job's end delivered to the tenant's endpoint, signed (Standard Webhooks).

- ``targets``: which URLs may be called (SSRF policy);
- ``subscribe``: which webhook a submission gets, recorded before its job is queued;
- ``dispatcher``: the loop that makes due deliveries, retries with backoff, records attempts.

Scheduling is done by the job-state scripts (store/webhooks.py), so a job's end is delivered
whichever process ended it.
"""
