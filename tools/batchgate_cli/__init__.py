"""The `batchgate` command's client-side and operator commands (not shipped to Lambda).

Everything here runs on a person's machine or in CI: commands that drive a deployment through the
public API with the official `openai` SDK (run, batches, files, smoke) and commands that operate a
stack with boto3. The Lambda package (`functions/batchgate`) never imports from here.
"""
