"""Analysis of networks and trained runs: cost tables and receptive fields (`cost`), summary tables
and charts (`tables`), features of a run (`features`), nearest neighbours (`neighbors`), pictures
of weights and images (`pictures`)."""
