"""Shared test setup.

Every pytest process gets its own ROS 2 domain and localhost-only discovery, so DDS tests of
parallel runs (CI, developers' machines) never see each other's topics. Child processes
inherit the environment, so publisher/subscriber processes of one test share the domain.
"""

import os

os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
