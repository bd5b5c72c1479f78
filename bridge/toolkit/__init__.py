"""The field technician's tools: ``check``, ``device-test``, ``print-test`` and their steps.

``report`` holds the step and report values every tool prints (and the console
shows); ``certs`` and ``clock`` are pure judgements; ``network`` and ``idp`` are
the steps that talk to the IdP.  May import the login core and below; never the console.
"""
