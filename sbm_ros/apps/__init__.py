"""The programs: command-line tools, the benchmark, the demo and the offline bag tool.

``sbm-train`` / ``sbm-localize`` (:mod:`.cli`), ``sbm-bench`` (:mod:`.bench`), the virtual-head
demo and its recorder (:mod:`.demo`, :mod:`.recorder`), ``sbm-bag`` (:mod:`.bag_offline`) and the
README parameter-table generator (:mod:`.docs_api`).

Dependency rule (checked by ``test/test_layout.py``): apps may import every other part of the
package (``core``, ``av``, ``sim``, ``nodes``) and ROS; nothing else in the package imports
``apps``.
"""
