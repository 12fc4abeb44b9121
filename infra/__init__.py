"""Infrastructure of the image generation service (AWS CDK v2): one construct per capability."""
