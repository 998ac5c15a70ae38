"""The synthetic scene generator behind ``ros2-inst3d gen-data``, apart from the dataset readers
and batching of :mod:`ros2_inst3d.data`.

* :mod:`.furniture`: parametric furniture and the MIT-0 meshes (``meshes/``);
* :mod:`.layout`: rooms and the placement of furniture in them;
* :mod:`.scanner`: the simulated RGB-D camera / spinning LiDAR and its trajectory;
* :mod:`.scene`: scene assembly (scan, accumulate, label) and the scene files.
"""
