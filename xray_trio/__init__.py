"""xray-trio: a drop-in AWS X-Ray daemon built on trio."""

__version__ = "0.1.0"
