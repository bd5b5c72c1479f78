"""The field technician's diagnostics: one step per link between the bridge and a tenant's IdP.

``model`` holds the step and report values every tool prints (check, device-test,
print-test, the console); ``certs`` and ``clock`` are pure judgements;
``network`` and ``idp`` are the steps that talk to the IdP.
"""
