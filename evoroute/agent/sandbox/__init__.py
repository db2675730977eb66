"""The sandbox of the agent's python tool.

Inside the child process (joined into one program, see ``launcher.child_source``): ``values``
(the values an expression may hold, size bounds), ``functions`` (callable names and methods),
``syntax`` (which AST nodes are allowed: ``validate``), ``interpreter`` (computes the AST node
by node, never compiling it), ``protocol`` (OS limits, request on stdin, JSON on stdout).
In the parent: ``launcher`` (OS isolation, starting the child, reading its answer).
"""
