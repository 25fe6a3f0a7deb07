"""The harness: the code that runs inside the sandbox beside the candidate, standard library only.

These files are copied into every sandbox (as the package `selfrepair_harness`) and read by
no one on the host but the tests. See `sandbox/README.md` for the threat model:

  wire     the framed messages between judge and worker, and how values cross as plain data
  worker   the candidate's side: loads the candidate's code and answers calls into it
  judge    the tests' side: runs the tests, calls the candidate only through the wire, and
           writes the verdict on a channel the candidate cannot reach
  guard    for runs where the candidate shares a process with the tests (repositories,
           commands): an audit hook and a pytest plugin that report what ran, and refuse and
           record reaches for the harness
"""
