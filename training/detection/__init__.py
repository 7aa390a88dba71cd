"""Object detection: train a torchvision detector on images with boxes, predict boxes, score
them with mAP, save and load the result. Plain data in and out (paths, arrays of boxes, class
names), so ``pipeline`` can call it; like the rest of ``training`` it never imports ``labeling``
or ``pipeline``. Import from the modules (``training.detection.train``, ...).
"""
