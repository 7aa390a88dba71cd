"""Where a round's predict step runs (``[compute] engine``): in this process, or on a Ray
cluster. Both engines call the same prediction function (``training.predict.predict``) and
return the same ``Predictions``, rows in the order of the paths given."""
